"""The data side: where rows come from (`sources`, the one entry point; the built-in corpora in `corpora`, users' files
in `local_files`), what each task makes of a row (`tasks`, every prompt in one place), how rows become model batches
(`collators`), and the built-in synthetic demo set (`synthetic`).

Media are decoded by the package's one decoder, `multimodal_gpt.media_multimodal_gpt`, which the processor (a Hub
file) uses too, so that training and serving decode alike.
"""

from .collators import COLLATORS, EpochCallback, TaskCollator
from .sources import TaskData, load_task_data, task_for, training_texts, undecoded_media_columns
from .tasks import TASKS, BadRowError, Example, MissingColumnError, Task, get_task

__all__ = [
    "COLLATORS",
    "TASKS",
    "BadRowError",
    "EpochCallback",
    "Example",
    "MissingColumnError",
    "Task",
    "TaskCollator",
    "TaskData",
    "get_task",
    "load_task_data",
    "task_for",
    "training_texts",
    "undecoded_media_columns",
]
