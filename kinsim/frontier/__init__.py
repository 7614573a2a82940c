"""The accuracy-cost frontier of test-time scaling: scored samples in, accuracy and cost per strategy out.

:mod:`kinsim.frontier.importers` turns scored generations written by other tools (the Kinetics paper's
public traces) into kinsim's scored-sample format.
"""
