"""The backends layer: run a lowered program (``toolchain.program``) and return a ``SimResult``.

``backends``   the registry: name -> backend, its capabilities and fixed-point profiles
``reference``  float64 torch simulation of the NIR semantics
``emulator``   bit-exact integer emulation of Lava's fixed-point LIF, batched
``lava_*``     Lava's CPU simulator (float, fixed point, lava-dl netx); the only modules importing Lava
"""
