"""Policy -> accuracy predictors. Pure algorithm package: never imports ``seernet``."""
