"""The terminal service: the till (operator actions -> engine -> corrections) and its wiring."""
