"""A fit that fails inside the framework: the data has 5 features, the model takes 4. Keras raises its own
ValueError, whose message is followed by the argument list of the call ("Arguments received by ...")."""

import keras
import numpy as np

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.fit(np.zeros((16, 5), "float32"), np.zeros((16, 1), "float32"), epochs=1, verbose=0)
print("RESULT " + '{"unreachable": true}')
