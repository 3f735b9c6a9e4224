"""Data planes: the kernel (l2tp_core, l2tp_ppp) and a null one that records calls."""
