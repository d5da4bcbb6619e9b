"""ksight.diagnose.rules"""
