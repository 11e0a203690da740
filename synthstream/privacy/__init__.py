"""privacy: differential-privacy mechanisms, the accountant and the persistent ledger.

Empty until the windowed-DP-statistics issue lands: nothing in the spine claims a formal
privacy guarantee, so nothing lives here yet.
"""
