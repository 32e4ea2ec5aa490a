"""Customer lifetime value: buy-till-you-die models (BG/NBD, Gamma-Gamma) and CLV training."""

from cip.models.clv.btyd import BetaGeoModel, GammaGammaModel

__all__ = ["BetaGeoModel", "GammaGammaModel"]
