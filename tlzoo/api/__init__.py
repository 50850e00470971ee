"""The plugin contract: what a plugin author implements and the engine calls (Backbone, Head,
Strategy, data sources, pretrainers, hook specifications, step names, errors).
"""
