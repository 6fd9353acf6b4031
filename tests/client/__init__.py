"""Unit tests of client/ against a scripted servicer (support/client_fakes.py), never the real server (fast tier)."""
