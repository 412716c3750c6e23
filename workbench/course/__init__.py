"""The course around the package: the notebook runner and its run-time records (``notebooks``), the
exercises that check themselves (``exercises``), the static site of the executed notebooks (``site``),
the main job's guided tour (``tour``), the set-up check (``doctor``) and their shared theme."""
