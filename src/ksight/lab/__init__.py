"""ksight.lab"""
