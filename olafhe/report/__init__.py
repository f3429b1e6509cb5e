"""Reports: the ``olafhe bench`` comparison, its plots and Markdown, and the README results section.

``bench`` runs the jobs and builds the rows; ``runs`` reads saved encrypted runs into rows; ``plots``
and ``markdown`` render rows (and plans) and never run a job.
"""
