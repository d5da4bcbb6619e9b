"""ksight.views"""
