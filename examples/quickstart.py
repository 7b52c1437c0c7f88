"""Which training rows matter most for the test loss, and how well do IF and RIF predict
what removing them does? Runs in a few seconds on the dataset that ships with leaveout.

    python examples/quickstart.py
"""

import numpy as np

import leaveout as lo
from leaveout.datasets import load_bundled

ds = load_bundled("digits_rff")                       # 1437 x 512, odd vs even digits
model = lo.GLM(l2=1e-5, penalty="per_sample").fit(ds.X_train, ds.y_train)
print(f"fit: converged={model.converged_} in {model.n_iter_} Newton steps, "
      f"relative gradient {model.grad_norm_:.1e}; test accuracy "
      f"{np.mean(model.predict(ds.X_test) == ds.y_test):.3f}")

att = lo.Attribution(model)
print(f"mean leverage {att.leverage.mean():.3f} (high: IF will underestimate)")

test_loss = lo.metrics.TestLoss(ds.X_test, ds.y_test)
scores = att.scores(test_loss, method="rif")          # effect of removing each row alone
helpful = np.argsort(scores)[-20:]                    # removing these raises the test loss most
print("rows whose removal would raise the test loss most:", np.sort(helpful).tolist())

for method in ("if", "rif", "ns", "retrain"):
    print(f"  removing those 20 rows changes the test loss by {att.effect(helpful, test_loss, method):+9.3f}"
          f"  ({method})")
