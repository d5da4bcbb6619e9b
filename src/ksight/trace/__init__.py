"""ksight.trace"""
