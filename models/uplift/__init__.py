"""Uplift models: who does a message persuade (and whom does it put off)?

Learned from randomised history (a campaign's treatment and control group):

* **T-learner** - one LightGBM classifier per group; uplift = P(buy | sent) -
  P(buy | held out);
* **X-learner** (Künzel et al. 2019) - the T-learner's models impute each
  person's effect, two LightGBM regressors learn it per group, blended by the
  share treated (a randomised propensity).

Evaluated on a held-out part with scikit-uplift's metrics (Qini coefficient,
AUUC, uplift at k) against two baselines on the same rows: random targeting
(Qini 0) and "target the highest purchase probability" (a LightGBM purchase
model that ignores the treatment). A model is promoted only if it beats both
(:func:`cip.models.registry.decide_promotion`).
"""

from cip.models.uplift.learners import (
    LEARNERS,
    TLearner,
    UpliftEvaluation,
    UpliftResult,
    XLearner,
    evaluate_uplift,
    fit_uplift,
)

__all__ = [
    "LEARNERS",
    "TLearner",
    "XLearner",
    "UpliftEvaluation",
    "UpliftResult",
    "evaluate_uplift",
    "fit_uplift",
]
