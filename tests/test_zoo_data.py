"""Data for the model zoo: event digits, segmentation digits, spoken digits, tonic loaders."""

import os

import h5py
import numpy as np
import pytest

from toolchain.data import EventDataset, load, open_dataset
from toolchain.data import digits as dg
from toolchain.data.digits import make_event_digits, make_segmentation_digits, simulate_dvs
from toolchain.data.speech import SPOKEN_FILE, WORDS, load_spoken_digits
from toolchain.data.tonic_loaders import convert_events, load_tonic
from toolchain.errors import NirDeployError


@pytest.fixture(scope="module")
def small_digits():
    return make_event_digits(12, 6, seed=3)


# ---------------------------------------------------------------------------- event digits
def test_event_digits_are_deterministic_with_the_documented_shapes(small_digits):
    tr, te = small_digits
    tr2, te2 = make_event_digits(12, 6, seed=3)
    for a, b in ((tr, tr2), (te, te2)):
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.channels, b.channels)
        np.testing.assert_array_equal(a.sample_ptr, b.sample_ptr)
        np.testing.assert_array_equal(a.images, b.images)
    assert tr.input_shape == te.input_shape == (2, 16, 16) and tr.duration == 0.1
    assert (len(tr), len(te)) == (12, 6) and tr.classes == [str(d) for d in range(10)]
    assert tr.images.shape == (12, 16, 16) and tr.images.dtype == np.float32
    assert 0 <= tr.images.min() and tr.images.max() <= 1 and tr.images.max() > 0.8
    assert tr.labels.min() >= 0 and tr.labels.max() <= 9
    assert tr.times.min() >= 0 and tr.times.max() < 0.1
    # a few hundred to a few thousand events per sample, like N-MNIST scaled down
    per = np.diff(tr.sample_ptr)
    assert per.min() > 200 and per.max() < 6000
    # the test split does not depend on n_train; another seed gives other events
    _, te3 = make_event_digits(3, 6, seed=3)
    np.testing.assert_array_equal(te3.times, te.times)
    tr4, _ = make_event_digits(12, 6, seed=4)
    assert tr4.n_events != tr.n_events or not np.array_equal(tr4.times, tr.times)


def test_train_and_test_images_are_disjoint_and_reused_only_when_asked_for():
    train_pool, test_pool = dg._pools(300, seed=0, test_pool=360, n_images=1797)
    assert test_pool.size == 300 and train_pool.size == 1497
    assert not set(train_pool) & set(test_pool)
    rng = np.random.default_rng(0)
    idx = dg._take(test_pool, 700, rng)
    assert idx.size == 700 and set(idx) == set(test_pool)
    np.testing.assert_array_equal(idx[:300], test_pool)  # every image once before repeats
    # more samples than images: reused images get other saccades, so other events
    _, b = make_event_digits(0, 2, seed=0, test_pool=1, size=8, duration=0.03)
    np.testing.assert_array_equal(b.images[0], b.images[1])
    assert not np.array_equal(b.sample(0).times, b.sample(1).times)


def test_on_and_off_events_and_events_at_the_edges(small_digits):
    tr, _ = small_digits
    c = tr.counts().reshape(len(tr), 2, 16, 16)
    off, on = c[:, 0].sum((1, 2)), c[:, 1].sum((1, 2))
    assert np.all(on > 50) and np.all(off > 50)  # both polarities in every sample
    assert 0.35 < on.sum() / c.sum() < 0.65
    # events come from where the image has edges, not from its flat background
    gy, gx = np.gradient(tr.images.astype(np.float64), axis=(1, 2))
    grad = np.hypot(gx, gy)
    per_pixel = c.sum(1)
    flat = grad < 1e-3
    assert per_pixel[flat].mean() < 0.1 * per_pixel[grad > 0.1].mean()
    # timestamps are continuous, not multiples of the 0.1 ms simulation step
    frac = np.round(tr.times / 1e-4, 6) % 1
    assert np.mean(frac > 1e-3) > 0.5


def test_a_moving_bright_bar_fires_on_at_its_leading_edge_and_off_at_its_trailing_edge():
    img = np.zeros((1, 8, 16))
    img[0, :, 4:8] = 1.0  # a bright bar, columns 4..7
    n_sub = 200
    path = np.zeros((1, n_sub + 1, 2))
    path[0, :, 0] = np.linspace(0, 4, n_sub + 1)  # moves right by 4 px in 20 ms
    p = dict(dg.PARAMS)
    th = np.full(8 * 16, 0.25)
    b, t, c = simulate_dvs(img, path, 0.02, th, th, p)
    pol, x = c // (8 * 16), c % 16
    assert np.all(x[pol == 1] >= 8) and np.all(x[pol == 1] <= 11)  # newly lit pixels: ON
    assert np.all(x[pol == 0] >= 4) and np.all(x[pol == 0] <= 7)  # pixels the bar leaves: OFF
    assert np.count_nonzero(pol == 1) > 50 and np.count_nonzero(pol == 0) > 50
    # the refractory period separates the events of a pixel
    for ch in np.unique(c):
        assert np.all(np.diff(np.sort(t[c == ch])) >= p["refractory"] - 1e-12)


def test_noise_only_scenes_and_options():
    tr, _ = make_event_digits(2, 1, seed=0, size=12, duration=0.05, noise_rate=0.0)
    assert tr.input_shape == (2, 12, 12) and tr.duration == 0.05 and tr.times.max() < 0.05
    with pytest.raises(NirDeployError, match="unknown option"):
        make_event_digits(1, 1, sacade=0.1)


# ---------------------------------------------------------------------------- segmentation digits
def test_segmentation_masks_cover_the_digits():
    tr, te = make_segmentation_digits(8, 2, seed=1)
    tr2, _ = make_segmentation_digits(8, 2, seed=1)
    np.testing.assert_array_equal(tr.times, tr2.times)
    np.testing.assert_array_equal(tr.targets, tr2.targets)
    assert tr.input_shape == (2, 32, 32) and tr.targets.shape == (8, 32, 32) == tr.images.shape
    assert tr.targets.dtype == np.int64 and tr.targets.min() == 0 and tr.targets.max() <= 10
    th = dg.SEG_PARAMS["mask_threshold"]
    for i in range(len(tr)):
        m, im = tr.targets[i], tr.images[i]
        np.testing.assert_array_equal(m > 0, im > th)  # every bright pixel belongs to a digit
        present = set(np.unique(m)) - {0}
        assert 1 <= len(present) <= 2 and 1 + tr.labels[i] in present
        # a digit covers a sizeable part of its 12x12 box
        assert np.count_nonzero(m) >= 15
    # events happen near the digits
    c = tr.counts().reshape(len(tr), 2, 32, 32).sum(1)
    from scipy.ndimage import binary_dilation

    near = np.stack([binary_dilation(tr.targets[i] > 0, iterations=4) for i in range(len(tr))])
    assert c[near].sum() > 0.9 * c.sum()
    # one or two digits per sample, both counts occur
    n_dig = [len(set(np.unique(m)) - {0}) for m in tr.targets]
    assert set(n_dig) <= {1, 2}
    one, _ = make_segmentation_digits(3, 1, seed=0, n_digits=1, canvas=20, digit_size=10)
    assert one.input_shape == (2, 20, 20) and all(len(set(np.unique(m)) - {0}) == 1 for m in one.targets)
    with pytest.raises(NirDeployError, match="digit_size"):
        make_segmentation_digits(1, 1, canvas=10, digit_size=12)


# ---------------------------------------------------------------------------- images / targets fields
def test_images_and_targets_are_carried_through_subset_save_and_load(tmp_path):
    tr, _ = make_segmentation_digits(5, 1, seed=2, canvas=16, digit_size=8)
    sub = tr.subset([4, 1, 1])
    np.testing.assert_array_equal(sub.images, tr.images[[4, 1, 1]])
    np.testing.assert_array_equal(sub.targets, tr.targets[[4, 1, 1]])
    p = tmp_path / "seg.h5"
    tr.save(p, group="train")
    back = load(p, split="train")
    np.testing.assert_array_equal(back.images, tr.images)
    np.testing.assert_array_equal(back.targets, tr.targets)
    assert back.images.dtype == np.float32 and back.targets.dtype == np.int64
    with h5py.File(p) as f:
        assert f["train/targets"].dtype == np.uint8  # stored small, read as int64
    # files and datasets without them are unchanged: None
    plain = EventDataset(times=[0.0], channels=[0], sample_ptr=[0, 1], labels=[0], input_shape=(2,), duration=0.01)
    assert plain.images is None and plain.targets is None
    plain.save(tmp_path / "plain.h5")
    assert load(tmp_path / "plain.h5").images is None
    with h5py.File(tmp_path / "plain.h5") as f:
        assert "images" not in f and "targets" not in f
    with pytest.raises(NirDeployError, match="images must be an array"):
        EventDataset(times=[0.0], channels=[0], sample_ptr=[0, 1], labels=[0], input_shape=(2,), duration=0.01,
                     images=np.zeros((2, 4, 4)))


def test_digit_cache_is_keyed_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("NIRDEPLOY_CACHE", str(tmp_path / "cache"))
    a_tr, a_te = dg.cached_event_digits(n_train=3, n_test=2, size=8, duration=0.02)
    files = list((tmp_path / "cache").glob("digits-*.h5"))
    assert len(files) == 1
    b_tr, b_te = dg.cached_event_digits(n_train=3, n_test=2, size=8, duration=0.02)
    np.testing.assert_array_equal(a_te.times, b_te.times)
    np.testing.assert_array_equal(a_tr.images, b_tr.images)
    dg.cached_event_digits(n_train=3, n_test=2, size=8, duration=0.02, seed=1)
    assert len(list((tmp_path / "cache").glob("digits-*.h5"))) == 2


def test_open_dataset_names_the_generated_sets(monkeypatch):
    calls = []
    monkeypatch.setattr(dg, "load_digits_split", lambda split: calls.append(("digits", split)) or "d")
    monkeypatch.setattr(dg, "load_segmentation_split", lambda split: calls.append(("seg", split)) or "s")
    assert open_dataset("digits") == "d" and open_dataset("digits:train") == "d"
    assert open_dataset("digits-seg") == "s" and open_dataset("digits-seg:train") == "s"
    assert calls == [("digits", "test"), ("digits", "train"), ("seg", "test"), ("seg", "train")]
    with pytest.raises(NirDeployError, match="splits test, train"):
        open_dataset("digits:valid")


# ---------------------------------------------------------------------------- spoken digits
def test_shipped_spoken_digits_load_with_the_documented_splits():
    assert SPOKEN_FILE.exists() and SPOKEN_FILE.stat().st_size < 5e6
    tr, te = load_spoken_digits("train"), load_spoken_digits("test")
    assert (len(tr), len(te)) == (801, 199)  # 70 and 18 speakers
    assert tr.input_shape == te.input_shape == (64,)
    assert tr.classes == WORDS and set(np.unique(tr.labels)) == set(np.unique(te.labels)) == set(range(10))
    assert np.all(np.bincount(tr.labels) + np.bincount(te.labels) == 100)
    assert tr.times.max() < tr.duration <= 1.0 and tr.channels.max() < 64
    with h5py.File(SPOKEN_FILE) as f:
        split = f["extra/split"][()]
        spk = f["extra/speaker"][()]
        assert f["spikes/times"].dtype.metadata["vlen"] == np.float32
        assert len(f["extra/speakers"]) == 88
    assert not set(spk[split == 0]) & set(spk[split == 1])  # test speakers never heard in training
    assert len(set(spk[split == 1])) == 18
    # the generic SHD-layout reader gives the same events and 64 channels (root attribute)
    every = load(SPOKEN_FILE)
    assert every.input_shape == (64,) and len(every) == 1000
    np.testing.assert_array_equal(every.subset(np.flatnonzero(split == 1)).times, te.times)
    assert len(open_dataset("spoken-digits")) == 199 and len(open_dataset("spoken-digits:all")) == 1000
    with pytest.raises(NirDeployError, match="splits train, test and all"):
        load_spoken_digits("valid")
    with pytest.raises(NirDeployError, match="missing"):
        load_spoken_digits("train", path="/nonexistent/spoken.h5")


def test_spoken_digits_need_time_resolution():
    """As in SHD: a linear read-out of time-binned spike counts beats one of per-channel totals."""
    from sklearn.linear_model import RidgeClassifier

    tr, te = load_spoken_digits("train"), load_spoken_digits("test")

    def acc(feat):
        clf = RidgeClassifier(alpha=10.0).fit(feat(tr), tr.labels)
        return float(np.mean(clf.predict(feat(te)) == te.labels))

    norm = lambda x: np.log1p(x.reshape(len(x), -1))
    counts = acc(lambda d: norm(d.counts()))
    binned = acc(lambda d: norm(d.bin(d.duration / 8, n_steps=8)))
    assert binned > counts + 0.1, (counts, binned)


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="generating needs espeak-ng")
def test_spoken_digit_generator_is_deterministic(tmp_path):
    from toolchain.data.speech import synthesize_spoken_digits

    kw = dict(n_per_class=1, accents=("en-us",), variants=("m1", "f2"), test_fraction=0.5)
    a = load_spoken_digits("all", path=synthesize_spoken_digits(tmp_path / "a.h5", **kw))
    b = load_spoken_digits("all", path=synthesize_spoken_digits(tmp_path / "b.h5", **kw))
    assert len(a) == 10 and a.input_shape == (64,)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.channels, b.channels)
    assert len(load_spoken_digits("test", path=tmp_path / "a.h5")) > 0


# ---------------------------------------------------------------------------- tonic
def _write_nmnist_bin(path, x, y, p, t_us):
    t = np.asarray(t_us, dtype=np.int64)
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (np.asarray(p) << 7) | ((t >> 16) & 127)
    raw[:, 3] = (t >> 8) & 255
    raw[:, 4] = t & 255
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.tofile(path)


def _rand_events(rng, n, W, H, t_max_us):
    return (rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n), np.sort(rng.integers(0, t_max_us, n)))


def test_tonic_nmnist_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    written = []
    for split, folder in (("train", "Train"), ("test", "Test")):
        for digit in (3, 7):
            for k in range(2):
                ev = _rand_events(rng, 50, 34, 34, 300_000)
                _write_nmnist_bin(tmp_path / "NMNIST" / folder / str(digit) / f"{k:05d}.bin", *ev)
                written.append((split, digit, ev))
    ds = load_tonic("NMNIST", tmp_path, "train")
    assert len(ds) == 4 and ds.input_shape == (2, 34, 34) and list(ds.labels) == [3, 3, 7, 7]
    assert ds.classes[3] == "3 - three"
    for i, (_, digit, (x, y, p, t)) in enumerate(w for w in written if w[0] == "train"):
        s = ds.sample(i)
        np.testing.assert_allclose(s.times, t * 1e-6, rtol=0, atol=1e-12)  # microseconds -> seconds
        np.testing.assert_array_equal(s.channels, np.ravel_multi_index((p, y, x), (2, 34, 34)))
    assert ds.duration == pytest.approx(np.ceil(ds.times.max() * 1e3 + 1e-9) * 1e-3)
    # root may name the dataset folder itself; the spec form goes through open_dataset
    te = load_tonic("n-mnist", tmp_path / "NMNIST", "test")
    assert len(te) == 4
    assert len(open_dataset(f"tonic:NMNIST:{tmp_path}:train")) == 4
    assert len(open_dataset(f"tonic:NMNIST:{tmp_path}")) == 4  # test by default
    assert len(load_tonic("NMNIST", tmp_path, "train", max_samples=2)) == 2


def test_tonic_dvsgesture_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    kept = {}
    for user, light in ((1, "fluorescent"), (2, "led")):
        d = tmp_path / "DVSGesture" / "ibmGestureTrain" / f"user{user:02d}_{light}"
        d.mkdir(parents=True)
        for label in (0, 10):
            x, y, p, t = _rand_events(rng, 40, 128, 128, 6000)
            t = t + 1_000_000  # recordings do not start at 0 (ms)
            np.save(d / f"{label}.npy", np.stack([x, y, p, t], axis=1).astype(np.int64))
            kept[(user, label)] = (x, y, p, t)
    ds = load_tonic("DVSGesture", tmp_path, "train")
    assert len(ds) == 4 and ds.input_shape == (2, 128, 128) and sorted(ds.labels) == [0, 0, 10, 10]
    assert len(ds.classes) == 11 and ds.times.min() == 0.0  # aligned to each sample's first event
    for i in range(len(ds)):
        s = ds.sample(i)
        match = [v for (u, lab), v in kept.items() if lab == s.label and len(v[3]) == len(s)]
        x, y, p, t = next(v for v in match if np.allclose(s.times, (v[3] - v[3].min()) * 1e-3))
        np.testing.assert_array_equal(s.channels, np.ravel_multi_index((p, y, x), (2, 128, 128)))
    with pytest.raises(NirDeployError, match="ibmGestureTest"):
        load_tonic("DVSGesture", tmp_path, "test")


def test_tonic_shd_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    n = 5
    times = [np.sort(rng.integers(0, 900, rng.integers(5, 30))).astype(np.float64) / 1024 for _ in range(n)]
    units = [rng.integers(0, 700, t.size).astype(np.uint16) for t in times]
    d = tmp_path / "SHD"
    d.mkdir()
    with h5py.File(d / "shd_test.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.array(times + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.float16))
        f.create_dataset("spikes/units", data=np.array(units + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=np.arange(n, dtype=np.uint16) * 3)
        f.create_dataset("extra/keys", data=np.array([f"w{i}".encode() for i in range(20)]))
        f.create_dataset("extra/speaker", data=np.zeros(n, np.uint16))
    ds = load_tonic("shd", tmp_path, "test")
    assert ds.input_shape == (700,) and list(ds.labels) == [0, 3, 6, 9, 12] and ds.classes[12] == "w12"
    direct = load(d / "shd_test.h5")  # nirdeploy's own SHD reader
    for i in range(n):
        s = ds.sample(i)
        order = np.lexsort((units[i], times[i]))
        # tonic keeps whole microseconds
        np.testing.assert_allclose(s.times, times[i][order], atol=1.01e-6)
        np.testing.assert_array_equal(s.channels, units[i][order])
        np.testing.assert_allclose(np.sort(s.times), np.sort(direct.sample(i).times), atol=1.01e-6)
    with pytest.raises(NirDeployError, match="shd_train.h5"):
        load_tonic("SHD", tmp_path, "train")


def _write_fake_aedat4(path, events):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".npy"), events)
    os.replace(path.with_suffix(".npy"), path)


def test_tonic_cifar10dvs_layout_split_and_conversion(tmp_path, monkeypatch):
    """CIFAR10-DVS's .aedat4 files need the aedat package to parse; nirdeploy's part (folder
    layout, labels, splits, conversion) is tested with tonic's reader swapped for one that reads
    the same structured events from .npy files written here."""
    import tonic.datasets.cifar10dvs as cd

    dt = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("on", bool)])  # aedat's names
    rng = np.random.default_rng(3)
    kept = {}
    for cls in ("airplane", "truck"):
        for k in range(10):
            ev = np.zeros(20, dt)
            ev["t"] = 1_600_000_000_000_000 + np.sort(rng.integers(0, 1_000_000, 20))
            ev["x"], ev["y"], ev["on"] = rng.integers(0, 128, 20), rng.integers(0, 128, 20), rng.integers(0, 2, 20)
            _write_fake_aedat4(tmp_path / "CIFAR10DVS" / cls / f"cifar10_{cls}_{k}.aedat4", ev)
            kept[(cls, k)] = ev
    monkeypatch.setattr(cd, "read_aedat4", lambda p: np.load(p))
    tr, te, every = (load_tonic("CIFAR10DVS", tmp_path, s) for s in ("train", "test", "all"))
    assert (len(tr), len(te), len(every)) == (18, 2, 20)
    assert tr.input_shape == (2, 128, 128) and tr.classes[9] == "truck"
    assert sorted(te.labels) == [0, 9] and sorted(set(tr.labels)) == [0, 9]
    assert tr.times.min() == 0.0 and tr.times.max() < 1.0  # shifted to each sample's first event
    ev = kept[("truck", 9)]  # the last truck file (by name) is in the test split
    s = te.sample(int(np.flatnonzero(te.labels == 9)[0]))
    t = (ev["t"] - ev["t"].min()).astype(np.float64) * 1e-6
    np.testing.assert_allclose(s.times, t, atol=1e-9)
    np.testing.assert_array_equal(s.channels, np.ravel_multi_index((ev["on"].astype(int), ev["y"], ev["x"]), (2, 128, 128)))


def test_tonic_cifar10dvs_without_aedat_says_what_to_install(tmp_path):
    pytest.importorskip("tonic")
    try:
        import aedat  # noqa: F401

        pytest.skip("aedat is installed")
    except ImportError:
        pass
    (tmp_path / "CIFAR10DVS" / "cat").mkdir(parents=True)
    (tmp_path / "CIFAR10DVS" / "cat" / "x.aedat4").write_bytes(b"#!AER-DAT4.0\r\n")
    with pytest.raises(NirDeployError, match="aedat"):
        load_tonic("CIFAR10DVS", tmp_path, "all")


def test_convert_events_drops_events_outside_the_sensor():
    ev = np.zeros(3, np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)]))
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 40, 2], [0, 0, 3], [5, 6, 7], [True, False, False]
    t, c, dropped = convert_events(ev, (34, 34, 2))
    assert dropped == 1 and list(c) == [1 * 34 * 34 + 1, 3 * 34 + 2]
    np.testing.assert_allclose(t, [5e-6, 7e-6])


def test_tonic_bad_names_paths_and_splits(tmp_path):
    with pytest.raises(NirDeployError, match="unknown tonic dataset 'MNIST'"):
        load_tonic("MNIST", tmp_path)
    with pytest.raises(NirDeployError, match=r"NMNIST train data not found.*never downloads"):
        load_tonic("NMNIST", tmp_path / "nowhere")
    with pytest.raises(NirDeployError, match="splits train, test, not 'all'"):
        load_tonic("SHD", tmp_path, "all")
    with pytest.raises(NirDeployError, match="CIFAR10-DVS .aedat4 files"):
        (tmp_path / "CIFAR10DVS").mkdir()
        load_tonic("CIFAR10DVS", tmp_path, "train")
    with pytest.raises(NirDeployError, match="tonic:NAME:ROOT"):
        open_dataset("tonic:NMNIST")
    (tmp_path / "SHD").mkdir()
    (tmp_path / "SHD" / "shd_train.h5").write_bytes(b"not hdf5")
    with pytest.raises(NirDeployError, match="tonic cannot open SHD"):
        load_tonic("SHD", tmp_path, "train")
