"""The report: what the notebook shows and how it becomes HTML and PDF. Modules:
    plots           figures and tables of Part I, and the text layout of the sample panels
    evidence_plots  figures of Part II (held-out curves, sweeps, differences, saturation)
    analysis        hidden units and next-character candidates of a trained network
    narrative       the report's prose with its computed numbers, as Markdown
    captions        numbered figures, tables and passages with their captions
    speed           a short timing of the training forms, for the appendix
    render          the executed notebook to HTML and to PDF (pandoc's typst writer, typst)
    pdf             the PDF side: pandoc's typst, compiled; where figures, lists and passages went, and the float rules
    html            the HTML of the report, one file that works offline (formulas as MathML)
    watch           the training progress on the terminal of `make report`
    parameters      the notebook's parameters from the environment, checked first; `make report`'s guarded nbconvert
"""
from charrnn.report import evidence_plots, narrative
from charrnn.report.analysis import (activations, distinct_word_ratio, pick_units, plot_activation_panels,
                                     plot_top_candidates, text_features, top_candidates)
from charrnn.report.captions import ref, show_figure, show_passage, show_table
from charrnn.report.plots import (describe_vocab, gradcheck_table, known_word_fraction, markdown_table,
                                  plot_smooth_loss, plot_text_panels, save_figure)
from charrnn.report.speed import time_forms
