"""The explorer's state: small observable traitlets models, composed by the session. No widgets, no WMS.

=========== ==================================================================
session     the composition and what a click does (``ExploreSession``)
scope       the year, the embedding set and the set beside, with their indexes
search      k, mode, spread, the last search and its results
layers      region layers with their own threshold and opacity, kept by key
regions     which region layer is asked for, and how it is made
labelling   the labels and the labelling loop (``LabelLoop``)
explaining  where a match is: the explainer and the last explanation
traits      checked traits (a bad value refused, the old one kept)
attempts    a view's work: a package error becomes a line of text
=========== ==================================================================
"""
