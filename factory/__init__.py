"""Recipes that span stages: `build` (train candidates -> evaluate together -> gate -> pick) and `experiment`
(the paper's grid). They call each stage's public entry points only."""
