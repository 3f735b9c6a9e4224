"""kl2tp: an L2TPv2 LNS and LAC with a Python control plane and a Linux kernel data plane."""
