"""UI layer: Help > Getting started, a short guide to the four steps, freezing, and
what to try when accuracy is low. Non-modal, so it can stay open beside the window.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

GUIDE = """
<h2>Getting started</h2>
<p>Teach a network that already knows many pictures (pretrained on ImageNet) to tell
your own classes apart. Four steps, one tab each (Ctrl+1 to Ctrl+4):</p>
<ol>
<li><b>Data.</b> Drop a folder that holds one subfolder per class (the subfolder names
become the class names), choose <i>Open folder…</i>, or <i>Try a sample dataset</i>.
The pictures are checked and a fifth of each class is set aside for validation
(unless the folder has its own train/ and val/ subfolders): the model never trains on
those, so they show how well it does on pictures it has not seen.</li>
<li><b>Model.</b> Choose a backbone, the pretrained network, and which of its layers
train: <i>Train head only</i>, <i>Train last</i> N blocks, <i>Train everything</i>,
or check layers in the tree.</li>
<li><b>Train.</b> Set the epochs (passes over the training pictures), the learning rate
and the augmentation, then <i>Start training</i> (Ctrl+Enter). The curves show loss and
accuracy as it learns. <i>Stop</i> (Esc) keeps the best model so far.</li>
<li><b>Results.</b> Accuracy per class and the confusion matrix on the validation
pictures. Drop pictures to see what the model says about them, and <i>Export…</i> the
model as a folder (model.safetensors and model.json, optionally TorchScript and
ONNX).</li>
</ol>
<p>Every run is kept. <i>Save project…</i> (File menu) keeps the settings too:
opening the project later brings back its last run, ready to predict and export.</p>

<h3>What freezing means</h3>
<p>A <b>frozen</b> layer keeps the weights it learned on ImageNet; only the checked
layers change while training. <b>Training the head only</b> (the last layer, which
names your classes) is the fastest and works well with few pictures: the network sees
as it did before and only learns which of its features mean which class.
<b>Unfreezing the last blocks</b> lets it adapt what it sees to your pictures, which
helps when they look unlike everyday photos; it needs more pictures and more time.
BatchNorm layers in frozen parts stay fixed unless <i>Train BatchNorm layers in frozen
parts</i> is checked.</p>

<h3>When accuracy is low</h3>
<ul>
<li><b>More pictures per class.</b> A few dozen per class at least; the class with the
fewest pictures is often the weakest row in <i>Accuracy per class</i>.</li>
<li><b>Check the labels.</b> The confusion matrix shows which classes are mixed up:
look in those folders for pictures in the wrong class, or classes that overlap.</li>
<li><b>Unfreeze the last blocks</b> (step 2, <i>Train last</i> 2 blocks) when the
head alone stops improving.</li>
<li><b>More epochs</b> (step 3) while the validation curve still improves;
<i>Early stopping</i> ends a run that no longer does.</li>
<li><b>Augmentation</b> (step 3, <i>Light</i> or <i>Standard</i>) shows the model varied
copies of each picture, which helps when training accuracy is much higher than
validation accuracy.</li>
<li><b>A larger backbone</b> (step 2), if the computer has the time.</li>
</ul>
"""


class GettingStartedDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Getting started")
        self.browser = QTextBrowser()
        self.browser.setHtml(GUIDE)
        self.browser.setOpenExternalLinks(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(620, 680)
