"""Model front-ends (thin Python over medground._C)."""
