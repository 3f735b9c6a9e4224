"""Sans-IO PPP: frames, the RFC 1661 automaton, LCP, authentication, IPCP, IPv6CP, link phases."""
