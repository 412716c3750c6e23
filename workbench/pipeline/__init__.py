"""``run(config)`` and the verbs around it: the one place where the parts are composed.

preflight -> data -> train (or reuse a stored training) -> compression steps -> evaluate -> measure
-> Result -> store. Every part is a plain function that can be called alone; this package only wires
them, one job per module:

- ``checks``: ``preflight``, what stops a config before any work and what is worth a note;
- ``orchestration``: ``run`` and ``run_many`` and their phases (prepare, then time and store a batch);
- ``launch``: a data-parallel config run through torchrun, and what stops one;
- ``training``: train or reuse a training, compress it, the checkpoint a training resumes from, teachers;
- ``verbs`` and ``profiling``: ``sweep``, ``distill``, ``load_model``, ``inference_sweep``, ``evaluator``, ``profile``;
- ``writing``: ``generate``, text from a language-model run, streamed;
- ``options``: ``RunOptions``, ``run``'s keywords as the one frozen object every phase is handed;
- ``user_warning``: warnings that point at the caller's own line, however deep the pipeline warns.

Train once, reuse: a store that already holds a finished training of the same data, model, train,
hardware, parallel and distill sections gives its trained weights to the next run of them, so a baseline and
its compressed variants train once (``reuse=False`` trains again; the row names the reused run).
"""

# The package's public names, re-exported (``name as name``) so ``from workbench.pipeline import run`` keeps working;
# workbench/__init__.py's _EXPORTS is the one list of what the public API offers.
from ..tasks import initial_model as initial_model
from ..tasks import training_subset as training_subset
from .checks import NO_FLIP as NO_FLIP
from .checks import Preflight as Preflight
from .checks import preflight as preflight
from .launch import MAX_RANKS_PER_CORE as MAX_RANKS_PER_CORE
from .orchestration import run as run
from .orchestration import run_many as run_many
from .profiling import PHASES as PHASES
from .profiling import profile as profile
from .training import TRAINING_METRICS as TRAINING_METRICS
from .training import load_teacher as load_teacher
from .verbs import bits_curve as bits_curve
from .verbs import distill as distill
from .verbs import distill_summary as distill_summary
from .verbs import evaluator as evaluator
from .verbs import inference_sweep as inference_sweep
from .verbs import load_model as load_model
from .verbs import sweep as sweep
from .writing import Generation as Generation
from .writing import Samples as Samples
from .writing import generate as generate
