"""A custom training loop in PyTorch: Keras layers on the torch backend inside a torch.nn.Module, trained
with torch.optim.AdamW, a torch loss and a DataLoader; gradients clipped with torch's own utility."""

BACKENDS = ("torch",)

import json

import keras
import numpy as np
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                                      keras.layers.Dense(16, activation="relu")])
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


keras.utils.set_random_seed(17)
torch.manual_seed(17)
rng = np.random.default_rng(17)
x = torch.tensor(rng.normal(size=(300, 10)).astype("float32"))
y = torch.tensor(np.digitize(x[:, 0].numpy(), [-0.5, 0.5]).astype("int64"))
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=30, shuffle=True,
                                     generator=torch.Generator().manual_seed(17))

net = Net()
optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
loss_fn = torch.nn.CrossEntropyLoss()
losses = []
for epoch in range(3):
    net.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(net(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
net.eval()
with torch.no_grad():
    accuracy = (net(x).argmax(dim=1) == y).float().mean().item()
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "parameters": sum(p.numel() for p in net.parameters()),
    "steps": len(losses),
    "loss": losses[-1],
    "accuracy": accuracy,
}))
