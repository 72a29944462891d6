"""Ray actors wrapping RecoWorld's plain classes (the distribution work builds here).

Imports go one way: jobs -> actors -> recoworld. Nothing here is imported by `recoworld`.
"""
