"""omni's Kafka executor: requests and results as JSON messages on Kafka topics (``"kafka"``)."""

from omni_executor_kafka._version import __version__
from omni_executor_kafka.executor import KafkaDiffusionExecutor, KafkaOptions
from omni_executor_kafka.settings import KafkaSettings

__all__ = ["KafkaDiffusionExecutor", "KafkaOptions", "KafkaSettings", "__version__"]
