"""A Lava LIF that resets by subtraction: ``LIFSubtractReset`` and its two process models.

Lava 0.10 has no such neuron (``lava/proc/lif/models.py`` sets v to 0 where it spiked). This
process is ``lava.proc.lif.process.LIFReset`` (LIF with periodic state resets every
``reset_interval`` steps at phase ``reset_offset``) plus a per-neuron Var ``v_sub``; its models
follow ``PyLifResetModelFloat`` / ``PyLifResetModelBitAcc`` line for line except the reset:

* floating point (tag ``floating_pt``): spike where ``v > vth``, then ``v -= v_sub`` on the
  spiking neurons;
* bit-accurate fixed point (tags ``fixed_pt`` / ``bit_accurate_loihi``): Lava's bit-accurate LIF
  arithmetic (``AbstractPyLifModelFixed.subthr_dynamics``: 24-bit u wrapping, v saturating,
  spike where ``v > vth << 6``), then ``v <- v - v_sub`` (integers in 24-bit state units, one per
  neuron) where it spiked. Since ``v > vth << 6 >= 0`` and ``0 <= v_sub < 2^23`` (the quantizer's
  bound) the result stays inside the 24-bit range without a clip.

A partial reset (``reset = "partial"``, toolchain/dynamics/discretize.py) is the same process with
a per-neuron Var ``v_keep``: ``v <- v_keep v - v_sub`` in floating point, ``v <- ((v_keep v) >> 12)
- v_sub`` in fixed point (``v_keep`` in 1/4096ths, 4096 = keep all: the pure subtraction; the
product is formed in int64, v > 0 there so the shift floors). ``v_keep`` defaults to keep-all.

The backends select the models through ``exception_proc_model_map``, keyed by process instance
(Lava 0.10's compiler looks a process up there before it searches the process's folder for
models); simulators/emulator.py computes the same integers.
"""

from __future__ import annotations

import typing as ty

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.proc.lif.process import LIFReset


class LIFSubtractReset(LIFReset):
    """LIFReset whose spiking neurons lose ``v_sub`` (per neuron) instead of resetting v to 0."""

    def __init__(
        self,
        *,
        shape: ty.Tuple[int, ...],
        v_sub: ty.Union[float, list, np.ndarray] = 0,
        v_keep: ty.Union[float, list, np.ndarray, None] = None,
        fixed_keep: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(shape=shape, **kwargs)
        self.v_sub = Var(shape=shape, init=v_sub)
        if v_keep is None:  # keep everything: 1.0 (float) or 4096 / 4096 (fixed point)
            v_keep = 4096 if fixed_keep else 1.0
        self.v_keep = Var(shape=shape, init=v_keep)


class _PeriodicReset:
    """LIFReset's state reset: u = v = 0 at every step with time_step % interval == offset."""

    def _init_reset(self, proc_params) -> None:
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = (proc_params["reset_offset"]) % self.reset_interval

    def _periodic_reset(self) -> None:
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0


@implements(proc=LIFSubtractReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifSubtractResetModelFloat(_PeriodicReset, AbstractPyLifModelFloat):
    """Floating point: PyLifResetModelFloat with ``v -= v_sub`` where it spiked."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    v_sub: np.ndarray = LavaPyType(np.ndarray, float)
    v_keep: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._init_reset(proc_params)

    def spiking_activation(self):
        return self.v > self.vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] = self.v_keep[spike_vector] * self.v[spike_vector] - self.v_sub[spike_vector]

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._periodic_reset()
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = self.spiking_activation()
        self.reset_voltage(spike_vector=s_out)
        self.s_out.send(s_out)


@implements(proc=LIFSubtractReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifSubtractResetModelBitAcc(_PeriodicReset, AbstractPyLifModelFixed):
    """Bit-accurate: PyLifResetModelBitAcc with ``v <- v - v_sub`` (integers) where it spiked."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    v_sub: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v_keep: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0
        self._init_reset(proc_params)

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        spiked = spike_vector != 0
        kept = np.right_shift(self.v_keep[spiked].astype(np.int64) * self.v[spiked].astype(np.int64), 12)
        self.v[spiked] = kept - self.v_sub[spiked]

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._periodic_reset()
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = self.spiking_activation()
        self.reset_voltage(spike_vector=s_out)
        self.s_out.send(s_out)



# --------------------------------------------------------------------------- snnTorch's two other reset rules
class LIFSnnTorchReset(LIFSubtractReset):
    """LIFSubtractReset with one of snnTorch 1.0.0's rules (toolchain/dynamics/discretize.py):

    * ``refractory=1`` (reset to 0; ``v_sub`` unused): v is held at 0 through the step after a
      spike, that step's input included (snnTorch's delayed ``reset_mechanism="zero"`` of Synaptic,
      RLeaky, RSynaptic and Lapicque);
    * ``reset_guard=True`` (reset by subtraction of ``v_sub``): a neuron whose v after its
      subtraction is still above ``vth`` decides the next step against ``vth + v_sub``
      (snnTorch's ``reset_delay=False``).

    ``held`` is the per-neuron flag the next step reads (spiked / still above the threshold);
    the window reset clears it with u and v.
    """

    def __init__(self, *, shape: ty.Tuple[int, ...], refractory: int = 0, reset_guard: bool = False, **kwargs) -> None:
        super().__init__(shape=shape, **kwargs)
        if bool(refractory) == bool(reset_guard):
            raise ValueError("LIFSnnTorchReset needs exactly one of refractory=1 and reset_guard=True")
        self.held = Var(shape=shape, init=0)
        self.proc_params["refractory"] = int(refractory)
        self.proc_params["reset_guard"] = bool(reset_guard)


class _SnnTorchRules:
    def _init_rules(self, proc_params) -> None:
        self.refractory = proc_params["refractory"]
        self.reset_guard = proc_params["reset_guard"]

    def _clear_held(self) -> None:
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.held *= 0

    def _step(self, vth):
        """After subthr_dynamics: hold, decide, reset; returns the spike vector."""
        held = self.held != 0
        if self.refractory:
            self.v[held] = 0
            s = self.v > vth
            self.v[s] = 0
            self.held[:] = s
        else:
            s = self.v > vth + np.where(held, self.v_sub, 0)
            self.v[s] = self.v[s] - self.v_sub[s]
            self.held[:] = self.v > vth
        return s


@implements(proc=LIFSnnTorchReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifSnnTorchResetModelFloat(_SnnTorchRules, _PeriodicReset, AbstractPyLifModelFloat):
    """Floating point: PyLifSubtractResetModelFloat with snnTorch's hold or guard."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    v_sub: np.ndarray = LavaPyType(np.ndarray, float)
    v_keep: np.ndarray = LavaPyType(np.ndarray, float)  # inherited Var of LIFSubtractReset, unused here
    held: np.ndarray = LavaPyType(np.ndarray, int)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._init_reset(proc_params)
        self._init_rules(proc_params)

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._periodic_reset()
        self._clear_held()
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = self._step(self.vth)
        self.s_out.send(s_out)


@implements(proc=LIFSnnTorchReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifSnnTorchResetModelBitAcc(_SnnTorchRules, _PeriodicReset, AbstractPyLifModelFixed):
    """Bit-accurate: PyLifSubtractResetModelBitAcc with snnTorch's hold or guard (integers; the
    guarded decision ``v > (vth << 6) + v_sub`` is computed in int64)."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    v_sub: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v_keep: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)  # inherited Var, unused here
    held: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0
        self._init_reset(proc_params)
        self._init_rules(proc_params)

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def run_spk(self):
        a_in_data = self.a_in.recv()
        self._periodic_reset()
        self._clear_held()
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in_data)
        s_out = self._step(np.int64(self.effective_vth))
        self.s_out.send(s_out)
