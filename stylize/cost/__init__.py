"""What work costs here: the time model (seconds per megapixel-step, from the start-up probe and then the runs
made here), and the budgets built on it — a request's limits, defaults sized to a time budget, GPU batches that fit
the free memory, ZeroGPU durations.

May import: the engine and the shared top-level modules. Never the experiments, the service, the UI or gradio.
"""
