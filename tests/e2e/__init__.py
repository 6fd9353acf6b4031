"""Real processes and what a user runs: console scripts, the CLI as a subprocess, the browser,
deployment files, SIGTERM, the docs examples (full run only)."""
