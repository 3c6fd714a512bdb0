"""Safety stages: stage 1's local rules (pure detection, no I/O), where the prompt's text is in each
dialect, and the output guard's windows. The guard policy that acts on them is
``policies/guard.py``; stage 2 (remote moderation) is ``policies/guard_stage2.py``."""
