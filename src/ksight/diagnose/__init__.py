"""ksight.diagnose"""
