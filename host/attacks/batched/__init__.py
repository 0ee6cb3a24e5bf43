"""Our own batched implementations of PGD, C&W-L2, C&W-L∞, DeepFool and EAD, compiled with tf.function.

Each kernel works on a whole batch at once and keeps every iteration inside one compiled
graph (tf.while_loop), so Python and ART's per-step NumPy round trips disappear.  Batch
dimensions are left unknown in the input signatures and scalars are passed as tensors:
each kernel is traced once per model whatever the batch size or parameter values.

The attack modules (host/attacks/pgd.py, cw_l2.py, cw_linf.py, deepfool.py, ead.py) call these by default
(`engine="ours"`) and keep ART selectable (`engine="art"`).
"""

from host.attacks.batched.cw_l2 import carlini_l2
from host.attacks.batched.cw_linf import carlini_linf
from host.attacks.batched.deepfool import deepfool
from host.attacks.batched.ead import elastic_net
from host.attacks.batched.pgd import pgd_linf
from host.core.params import Param, one_of

ENGINES = ("ours", "art")
ENGINE = Param("engine", str, "ours", "implementation: ours (batched, compiled) or art (ART 1.20)", one_of(*ENGINES))

__all__ = ["ENGINE", "ENGINES", "carlini_l2", "carlini_linf", "deepfool", "elastic_net", "pgd_linf"]
