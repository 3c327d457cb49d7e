"""The product's experiments built on the engine: Compare (one photo, many paintings, and its sheet) and Explore
(the paper's figures as grids of cells), with the labelled picture both draw.

May import: the engine, the cost model and the shared top-level modules. Never the service, the UI or gradio.
"""
