"""Which patients move the BMI coefficient most? A formula fit on a table, its rows ranked by
their rescaled influence on one coefficient and listed by id, then checked by an exact refit.

Uses scikit-learn's bundled diabetes table (442 patients, no download).
"""

from sklearn.datasets import load_diabetes

import leaveout as lo
from leaveout.metrics import Coefficient

df = load_diabetes(as_frame=True, scaled=False).frame
df.index = [f"p{i:03d}" for i in range(len(df))]          # patient ids

model = lo.GLM.from_formula("target ~ age + bmi + bp + s5 + C(sex)", df, family="squared", l2=0.0)
print(model.params_.round(3).to_string())

att = lo.Attribution(model)
bmi = Coefficient("bmi")
scores = att.scores(bmi, "rif", as_frame=True)            # effect of removing each patient alone
top = scores["rif"].sort_values().index[:10]              # the ten whose removal lowers it most
print("\nten patients whose removal lowers the bmi coefficient most (RIF):")
print(scores.loc[top].round(4).to_string())
print(f"\nremoving all ten: RIF predicts {att.effect(top, bmi, 'rif'):+.4f}, "
      f"NS {att.effect(top, bmi, 'ns'):+.4f}, exact refit {att.effect(top, bmi, 'retrain'):+.4f} "
      f"(bmi coefficient {model.params_['bmi']:.4f})")
