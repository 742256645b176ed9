"""Tests of minirn/backend/: one file per file of the package."""
