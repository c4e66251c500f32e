"""Event datasets: binning, files (nirdeploy format and SHD layout), the default task, the demo model."""

import h5py
import numpy as np
import pytest
import torch

from toolchain.data import EventDataset, load, load_default, make_temporal_task, open_dataset
from toolchain.data.events import FORMAT, VERSION
from toolchain.data.synthetic import DEFAULT_FILE, DEFAULT_SIZES
from toolchain.errors import NirDeployError


def ds_from(samples, input_shape=(4,), duration=0.01, values=None, **kw):
    """samples: list of (times, channels) per sample; labels 0, 1, ..."""
    times = np.concatenate([np.asarray(t, dtype=np.float64) for t, _ in samples]) if samples else np.zeros(0)
    chans = np.concatenate([np.asarray(c, dtype=np.int64) for _, c in samples]) if samples else np.zeros(0, np.int64)
    ptr = np.concatenate([[0], np.cumsum([len(t) for t, _ in samples])])
    return EventDataset(times=times, channels=chans, sample_ptr=ptr, labels=np.arange(len(samples)),
                        input_shape=input_shape, duration=duration, values=values, **kw)


# ---------------------------------------------------------------------------- binning
def test_counts_in_a_bin_are_summed_with_values():
    ds = ds_from([([0.0001, 0.0002, 0.0009, 0.0015], [1, 1, 1, 2])], values=[1.0, 0.5, 2.0, 3.0], duration=0.002)
    x = ds.bin(1e-3)
    assert x.dtype == np.float32 and x.shape == (1, 2, 4)
    np.testing.assert_array_equal(x[0], [[0, 3.5, 0, 0], [0, 0, 3.0, 0]])
    # the same events at a coarser dt land in one bin, never split
    np.testing.assert_array_equal(ds.bin(2e-3)[0], [[0, 3.5, 3.0, 0]])
    assert ds.bin(0.25e-3).sum() == pytest.approx(6.5)


@pytest.mark.parametrize("dt", [1e-3, 0.25e-3, 0.3e-3, 0.1e-3, 4e-3, 1.7e-3])
def test_event_exactly_on_a_bin_edge_belongs_to_that_bin(dt):
    k = np.arange(1, 200)
    for t in (k * dt, np.round(k * dt, 9), np.cumsum(np.full(k.size, dt))):  # three ways floats land near k*dt
        ds = ds_from([(t, np.zeros(k.size))], input_shape=(1,), duration=float(dt * 200))
        np.testing.assert_array_equal(ds.bin_indices(dt), k)
        x = ds.bin(dt)[0, :, 0]
        assert x[0] == 0 and np.all(x[1:] == 1)
    # clearly below an edge (1 ns) is still the previous bin
    ds = ds_from([(k * dt - 1e-9, np.zeros(k.size))], input_shape=(1,), duration=float(dt * 200))
    np.testing.assert_array_equal(ds.bin_indices(dt), k - 1)


def test_default_n_steps_when_dt_does_not_divide_duration():
    ds = ds_from([([0.0999, 0.0], [0, 3])], duration=0.1)
    assert ds.n_steps_at(1e-3) == 100  # 0.1 / 0.001 = 100.00000000000001 in floating point
    assert ds.n_steps_at(0.25e-3) == 400
    assert ds.n_steps_at(3e-3) == 34  # ceil(33.3): the last, partial bin is kept
    assert ds.n_steps_at(4e-3) == 25
    x, info = ds.bin_with_info(3e-3)
    assert x.shape == (1, 34, 4) and x[0, 33, 0] == 1 and x[0, 0, 3] == 1
    assert info["dropped_events"] == 0 and info["n_steps"] == 34 and info["binned_at_dt"] == 3e-3


def test_events_beyond_n_steps_are_dropped_and_counted():
    ds = ds_from([([0.0005, 0.0015, 0.0025], [0, 0, 0]), ([0.0031], [1])], duration=0.004)
    x, info = ds.bin_with_info(1e-3, n_steps=2)
    assert x.shape == (2, 2, 4) and x.sum() == 2
    assert info["dropped_events"] == 2 and info["events"] == 4
    # more steps than the duration: zero padding
    assert ds.bin(1e-3, n_steps=6).shape == (2, 6, 4)


def test_multidimensional_input_shape_uses_flat_channels():
    shape = (2, 3, 4)
    flat = np.ravel_multi_index(([1, 0], [2, 1], [3, 0]), shape)
    ds = ds_from([([0.0, 0.0012], flat)], input_shape=shape, duration=0.002)
    x = ds.bin(1e-3)
    assert x.shape == (1, 2, 2, 3, 4)
    assert x[0, 0, 1, 2, 3] == 1 and x[0, 1, 0, 1, 0] == 1 and x.sum() == 2


def test_binning_a_million_events_is_exact():
    rng = np.random.default_rng(0)
    n, per = 1000, 1000
    t = rng.uniform(0, 0.1, n * per)
    c = rng.integers(0, 40, n * per)
    ds = EventDataset(times=t, channels=c, sample_ptr=np.arange(n + 1) * per, labels=np.zeros(n), input_shape=(40,), duration=0.1)
    x, info = ds.bin_with_info(1e-3)
    assert x.shape == (n, 100, 40) and x.sum() == n * per and info["dropped_events"] == 0
    # every cell against numpy's own histogram of (sample, step, channel)
    sample = np.repeat(np.arange(n), per)
    ref, _ = np.histogramdd((sample, t, c), bins=(n, 100, 40), range=((0, n), (0, 0.1), (0, 40)))
    np.testing.assert_array_equal(x, ref)
    # reference for one sample
    s = ds.sample(7)
    ref = np.zeros((100, 40))
    np.add.at(ref, (np.floor(s.times / 1e-3).astype(int), s.channels), 1)
    np.testing.assert_array_equal(x[7], ref)


def test_sample_subset_counts():
    ds = ds_from([([0.001], [0]), ([0.002, 0.003], [1, 2]), ([], [])], classes=["a", "b", "c"])
    assert len(ds) == 3 and ds.n_events == 3
    s = ds.sample(1)
    np.testing.assert_array_equal(s.times, [0.002, 0.003]) and s.label == 1
    assert len(ds.sample(-1)) == 0
    sub = ds.subset([2, 1, 1])
    np.testing.assert_array_equal(sub.labels, [2, 1, 1])
    np.testing.assert_array_equal(sub.sample_ptr, [0, 0, 2, 4])
    np.testing.assert_array_equal(sub.channels, [1, 2, 1, 2])
    assert sub.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.subset(np.array([True, False, True])).labels, [0, 2])
    np.testing.assert_array_equal(ds.counts()[1], [0, 1, 1, 0])
    with pytest.raises(IndexError):
        ds.subset([3])


@pytest.mark.parametrize(
    "kw,word",
    [
        (dict(times=[-0.001], channels=[0]), ">= 0"),
        (dict(times=[np.nan], channels=[0]), "finite"),
        (dict(times=[0.0], channels=[4]), "channel"),
        (dict(times=[0.0, 0.1], channels=[0]), "one entry per event"),
    ],
)
def test_inconsistent_arrays_are_refused(kw, word):
    with pytest.raises(NirDeployError, match=word):
        EventDataset(sample_ptr=[0, len(kw["times"])], labels=[0], input_shape=(4,), duration=0.01, **kw)


def test_bad_dt():
    ds = ds_from([([0.0], [0])])
    for dt in (0, -1e-3, float("nan"), "x"):
        with pytest.raises(NirDeployError, match="dt"):
            ds.bin(dt)


# ---------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 0.05, 300))
    ds = EventDataset(
        times=t, channels=rng.integers(0, 12, 300), values=rng.uniform(0.5, 2, 300),
        sample_ptr=[0, 100, 100, 300], labels=[2, 0, 1], input_shape=(3, 4), duration=0.05,
        classes=["x", "y", "z"], name="demo", meta={"origin": "test", "rate": 12.5},
    )
    p = tmp_path / "d.h5"
    ds.save(p)
    with h5py.File(p) as f:
        assert f.attrs["format"] == FORMAT and f.attrs["version"] == VERSION
    back = load(p)
    for k in ("times", "channels", "values", "sample_ptr", "labels"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
        assert getattr(back, k).dtype == getattr(ds, k).dtype
    assert back.input_shape == (3, 4) and back.duration == 0.05 and back.classes == ["x", "y", "z"]
    assert back.name == "demo" and back.meta == {"origin": "test", "rate": 12.5}
    np.testing.assert_array_equal(back.bin(0.7e-3), ds.bin(0.7e-3))
    # unit values are not stored, and come back as ones
    ones = ds_from([([0.001], [0])])
    ones.save(tmp_path / "o.h5")
    with h5py.File(tmp_path / "o.h5") as f:
        assert "values" not in f
    assert load(tmp_path / "o.h5").values.tolist() == [1.0]


def test_splits_in_one_file(tmp_path):
    a, b = ds_from([([0.001], [0])]), ds_from([([0.002], [1]), ([0.003], [2])])
    p = tmp_path / "s.h5"
    a.save(p, group="train")
    b.save(p, group="test", mode="a")
    assert len(load(p, split="train")) == 1 and len(load(p, split="test")) == 2
    assert len(open_dataset(f"{p}:test")) == 2
    with pytest.raises(NirDeployError, match="splits test, train"):
        load(p)
    with pytest.raises(NirDeployError, match="no split 'valid'"):
        load(p, split="valid")


def write_shd(path, samples, labels, keys=None):
    vf = h5py.vlen_dtype(np.dtype("float16"))
    vu = h5py.vlen_dtype(np.dtype("uint16"))
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        dt_ = g.create_dataset("times", (len(samples),), dtype=vf)
        du = g.create_dataset("units", (len(samples),), dtype=vu)
        for i, (t, u) in enumerate(samples):
            dt_[i] = np.asarray(t, dtype=np.float16)
            du[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
        if keys is not None:
            e = f.create_group("extra")
            e.create_dataset("keys", data=np.array([k.encode() for k in keys]))
            e.create_dataset("speaker", data=np.zeros(len(samples), dtype=np.uint8))


def test_reads_shd_layout(tmp_path):
    samples = [([0.0, 0.0105, 0.5], [3, 699, 12]), ([0.25], [0]), ([], [])]
    write_shd(tmp_path / "shd_test.h5", samples, [1, 0, 1], keys=["zero", "one"])
    ds = load(tmp_path / "shd_test.h5")
    assert len(ds) == 3 and ds.input_shape == (700,) and ds.classes == ["zero", "one"]
    np.testing.assert_array_equal(ds.labels, [1, 0, 1])
    np.testing.assert_array_equal(ds.sample_ptr, [0, 3, 4, 4])
    np.testing.assert_array_equal(ds.channels, [3, 699, 12, 0])
    np.testing.assert_allclose(ds.times, [0.0, 0.0105, 0.5, 0.25], atol=2e-4)  # float16 on disk
    assert ds.times.dtype == np.float64
    assert ds.duration == pytest.approx(0.501)  # whole ms strictly above the last event
    x, info = ds.bin_with_info(1e-3)
    assert x.shape == (3, 501, 700) and info["dropped_events"] == 0
    assert x[0, 10, 699] == 1 and x[0, 500, 12] == 1 and x[1, 250, 0] == 1
    assert len(open_dataset(str(tmp_path / "shd_test.h5"))) == 3


def test_shd_layout_without_class_names_uses_largest_unit(tmp_path):
    write_shd(tmp_path / "mini.h5", [([0.001, 0.002], [0, 9])], [0])
    ds = load(tmp_path / "mini.h5")
    assert ds.input_shape == (10,) and ds.classes == []
    assert load(tmp_path / "mini.h5", input_shape=(32,)).input_shape == (32,)


def one_line_error(path, **kw):
    with pytest.raises(NirDeployError) as e:
        load(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_bad_files_raise_one_clear_sentence(tmp_path):
    assert "no such file" in one_line_error(tmp_path / "missing.h5")
    assert "directory" in one_line_error(tmp_path)
    (tmp_path / "text.h5").write_text("not hdf5")
    assert "not an HDF5 file" in one_line_error(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    assert "neither a nirdeploy event file" in one_line_error(tmp_path / "other.h5")
    with h5py.File(tmp_path / "fmt.h5", "w") as f:
        f.attrs["format"] = "something-else"
    assert "something-else" in one_line_error(tmp_path / "fmt.h5")
    ds_from([([0.001], [0])]).save(tmp_path / "v2.h5")
    with h5py.File(tmp_path / "v2.h5", "a") as f:
        f.attrs["version"] = 2
    assert "version 2" in one_line_error(tmp_path / "v2.h5")
    ds_from([([0.001], [0])]).save(tmp_path / "broken.h5")
    with h5py.File(tmp_path / "broken.h5", "a") as f:
        del f["times"]
        f["times_"] = [0.0]
    assert "times missing" in one_line_error(tmp_path / "broken.h5")
    ds_from([([0.001], [0])]).save(tmp_path / "noptr.h5")
    with h5py.File(tmp_path / "noptr.h5", "a") as f:
        del f["sample_ptr"]
    assert "sample_ptr missing" in one_line_error(tmp_path / "noptr.h5")
    ds_from([([0.001], [0])]).save(tmp_path / "badptr.h5")
    with h5py.File(tmp_path / "badptr.h5", "a") as f:
        del f["sample_ptr"]
        f["sample_ptr"] = np.array([0, 5])
    assert "sample_ptr" in one_line_error(tmp_path / "badptr.h5")
    write_shd(tmp_path / "shdbad.h5", [([0.001, 0.002], [0])], [0])
    assert "1 units" in one_line_error(tmp_path / "shdbad.h5")
    with open(tmp_path / "trunc.h5", "wb") as f:  # an HDF5 file cut short
        f.write((tmp_path / "v2.h5").read_bytes()[:1200])
    one_line_error(tmp_path / "trunc.h5")


# ---------------------------------------------------------------------------- the default task
def test_generator_is_deterministic():
    a_tr, a_te = make_temporal_task(30, 20, seed=3)
    b_tr, b_te = make_temporal_task(30, 20, seed=3)
    for a, b in ((a_tr, b_tr), (a_te, b_te)):
        for k in ("times", "channels", "sample_ptr", "labels"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    c_tr, _ = make_temporal_task(30, 20, seed=4)
    assert not np.array_equal(a_tr.times[:50], c_tr.times[:50])
    # the test split does not depend on the size of the train split
    _, d_te = make_temporal_task(5, 20, seed=3)
    np.testing.assert_array_equal(d_te.times, a_te.times)
    with pytest.raises(NirDeployError, match="unknown task parameter"):
        make_temporal_task(1, 1, bogus=1)


def test_task_structure():
    tr, _ = make_temporal_task(200, 1, seed=0)
    assert tr.input_shape == (40,) and tr.n_classes == 10 and tr.duration == 0.1
    assert np.all(tr.times >= 0) and np.all(tr.times < tr.duration)
    assert np.all(np.diff(tr.times)[np.diff(tr.sample_index()) == 0] >= 0)  # sorted within a sample
    # timestamps are on a microsecond grid
    np.testing.assert_allclose(tr.times * 1e6, np.round(tr.times * 1e6), atol=1e-6)
    # words of 40 spikes (2-4 per sample, 10 % dropped) plus ~20 noise events
    per = np.diff(tr.sample_ptr)
    assert 60 < per.mean() < 150


def test_default_file_sizes_and_rate_code_at_chance():
    assert DEFAULT_FILE.exists()
    with h5py.File(DEFAULT_FILE) as f:
        assert f.attrs["format"] == FORMAT and set(f.keys()) == {"train", "test"}
    tr, te = load_default("train"), load_default("test")
    assert (len(tr), len(te)) == (DEFAULT_SIZES["train"], DEFAULT_SIZES["test"]) == (2000, 500)
    assert tr.input_shape == te.input_shape == (40,) and tr.duration == 0.1
    assert tr.classes == te.classes and len(tr.classes) == 10
    assert set(np.unique(te.labels)) == set(range(10))
    assert open_dataset("default").name == "default-test" and len(open_dataset("default:train")) == 2000
    # the shipped file is what the generator makes
    g_tr, g_te = make_temporal_task(2000, 500, seed=0)
    np.testing.assert_array_equal(g_te.times, te.times)
    np.testing.assert_array_equal(g_tr.channels, tr.channels)
    # per-channel counts carry no class information: nearest class mean is at chance
    means = np.stack([tr.counts()[tr.labels == c].mean(0) for c in range(10)])
    ce = te.counts()
    pred = np.argmin(((ce[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(pred == te.labels) < 0.2
    with pytest.raises(NirDeployError, match="splits train and test"):
        load_default("valid")


# ---------------------------------------------------------------------------- the demo model
CHECKPOINT = DEFAULT_FILE.parents[1] / "demo_model" / "checkpoint.pt"


def test_fast_training_forward_equals_norse_and_grads_match_autograd():
    import norse.torch as nt
    from norse.torch.functional.threshold import threshold

    from toolchain.demo_model.model import build_model, run_over_time
    from examples.zoo.temporal.train import fast_forward

    torch.manual_seed(0)
    m = build_model(n_in=6, n_hidden=9, n_out=3, dt=0.5e-3)
    x = (torch.rand(4, 40, 6) < 0.3).float() * 2
    out, v_pre = fast_forward(m, x)
    assert torch.equal(out, run_over_time(m, x))
    y = torch.tensor([0, 1, 2, 1])
    torch.nn.functional.cross_entropy(v_pre.max(1).values, y).backward()
    fast = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    # reference: autograd through the same steps (norse surrogate, reset detached)
    h = x
    for mod in m:
        if not isinstance(mod, nt.LIFBoxCell):
            h = mod(h)
            continue
        p, v, zs, vs = mod.p, torch.zeros_like(h[:, 0]), [], []
        for t in range(h.shape[1]):
            v = v + mod.dt * p.tau_mem_inv * (h[:, t] + p.v_leak - v)
            vs.append(v)
            z = threshold(v - p.v_th, p.method, p.alpha)
            v = (1 - z.detach()) * v + z.detach() * p.v_reset
            zs.append(z)
        h, vref = torch.stack(zs, 1), torch.stack(vs, 1)
    torch.nn.functional.cross_entropy(vref.max(1).values, y).backward()
    for a, b in zip(fast, [p.grad for p in m.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_shipped_checkpoint_reproduces_its_accuracy():
    from toolchain.demo_model.model import build_model, predict, readout, run_layerwise

    ck = torch.load(CHECKPOINT, weights_only=True)
    assert {"state_dict", "model_kwargs", "dt", "readout", "seed", "test_accuracy", "train_seconds"} <= set(ck)
    assert ck["dt"] == 1e-3 and ck["readout"] == readout == "sum"
    model = build_model(**ck["model_kwargs"])
    model.load_state_dict(ck["state_dict"])
    te = load_default("test")
    with torch.no_grad():
        out = run_layerwise(model, torch.from_numpy(te.bin(ck["dt"])))
    acc = int((predict(out) == torch.from_numpy(te.labels)).sum()) / len(te)
    # the same number up to a spike flipped by another BLAS's rounding (2 samples of 500)
    assert acc == pytest.approx(ck["test_accuracy"], abs=0.0041)
    assert acc >= 0.85
