"""A model and data in, reports out: metrics, figures, predictions and the model card.

Contract: `report` (metrics, confusion matrix, report.json), `plots` (the figures, every
one written atomically), `predict` (prediction and `tlkit.evaluate_file` on any artifact),
`tta` (test-time augmentation), `model_card` (the Markdown card of a saved model) and
`curve_plot` (the learning curve's figure and tables). Nothing here trains. Evaluation sits
above `deploy` (it reads the artifacts deploy writes) and shares its layer with
`tlkit.calibrate`, whose temperature and rejection threshold `predict` applies.
"""
