"""Keras' first import in a process, from whichever training/ module comes first, with its chatter held back.

training/ is imported only once the backend is chosen, so its modules can `import keras` at the top;
importing this module just before does it through `backend.get_keras()`, which checks the backend
and holds back what TensorFlow's start-up code prints, as a plain `import keras` would not.
"""

from ..backend import get_keras

get_keras()
