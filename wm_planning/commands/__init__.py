"""Sub-commands of ``wm-plan``; each module registers its own with ``wm_planning.cli.command``."""
