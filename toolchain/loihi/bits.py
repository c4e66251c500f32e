"""Loihi 2 / Lava bit widths and fixed-point constants that nirdeploy's quantization targets.

Sources (lava-nc 0.10.0, relative to ``site-packages/lava``): ``proc/lif/models.py``
(``AbstractPyLifModelFixed``: 24-bit u and v, 12-bit decays, ``a_in << 6``, ``vth << 6``),
``proc/dense/models.py`` and ``utils/weightutils.py`` (8-bit weights), ``lib/dl/netx/hdf5.py``
(``bias_exp = 6``). docs/fixed-point.md explains each choice.
"""

STATE_BITS = 24  # u, v (precision=24 in AbstractPyLifModelFixed)
STATE_MAX = 1 << (STATE_BITS - 1)  # u wraps beyond, v saturates at +-(STATE_MAX - 1)
DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096
ACT_SHIFT = 6  # a_in << 6
VTH_SHIFT = 6  # vth << 6
VTH_MANT_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed bias mantissa (-4096 .. 4095; used symmetrically)
BIAS_EXP_MAX = 7  # 3-bit bias exponent
NETX_BIAS_EXP = 6  # lava/lib/dl/netx/hdf5.py: 'bias_exp': 6
WEIGHT_MANT_MAX = 254  # mixed sign: 8-bit signed mantissa times 2 (even), used symmetrically
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
#: threshold mantissa limit: a quarter of the state range keeps room for u and v above threshold
VTH_MANT_LIMIT = 1 << 15
#: K is lowered to make the threshold mantissa exact when it has at least this many levels
EXACT_VTH_MIN = 16
#: "loihi" profile: threshold mantissa aimed at when the weights would leave it coarser
VTH_MANT_TARGET = 1 << 10
#: back-edge sources are gated (see GATE_A_IN): their threshold stays at an eighth of the range
VTH_MANT_LIMIT_GATED = 1 << 14
#: a_in driving a gated group in the padding steps of each window: -(3 2^21 - 64) after << 6,
#: which cannot wrap u while |decayed u + input| < 2^21 and pushes v far below any threshold
GATE_A_IN = -((3 << 15) - 1)
#: calibration: the largest |u| or |v| seen may use at most this fraction of the state range
CALIB_FILL = 0.5

PROFILES = ("netx", "loihi")


