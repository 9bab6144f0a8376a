"""The host side of the UART host link (``ternac run``): :mod:`.frames` (the frame format, CRC
and request types the RTL's ``rtl/host_link.py`` speaks too), :mod:`.driver` (load, infer and
check over a serial port, a board's or the simulated one) and :mod:`.cmd` (the command)."""
