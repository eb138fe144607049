"""The datasets ferkit reads, each with the exact layout it expects: what ``ferkit data formats`` prints and
the README's table is made from."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ferkit.data import affectnet, ckplus, expw, ferplus, rafdb


@dataclass(frozen=True)
class Format:
    name: str  # what format= / --format takes
    title: str
    layout: str  # the files, exactly as the dataset ships them
    labels: str  # codes or names, and how they map
    splits: str
    faces: str  # size and colour as cached, subjects

    def to_dict(self) -> dict:
        return asdict(self)


FORMATS: tuple[Format, ...] = (
    Format("fer2013", "FER2013",
           "Kaggle release `train/<class>/Training_*.jpg`, `test/<class>/{PublicTest,PrivateTest}_*.jpg` (folder or "
           ".zip); or `fer2013.csv` (`emotion,pixels,Usage`)",
           "class folder names; csv codes 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral",
           "train, publictest, privatetest (`val` = publictest, `test` = both)", "48x48 gray"),
    Format("ferplus", "FER+", f"`{ferplus.MARKER}` (`Usage, Image name, neutral, happiness, surprise, sadness, anger, "
           "disgust, fear, contempt, unknown, NF`) with the original `fer2013.csv` beside it (or `--fer2013-csv`)",
           "10 annotators' votes; `--label-mode` majority, probability, crossentropy or multi_target; faces won by "
           "unknown/NF and the 173 rows without an image name dropped", "train, publictest, privatetest",
           "48x48 gray; soft targets in `targets`, votes in `extras['votes']`"),
    Format("rafdb", "RAF-DB (basic)", f"`{rafdb.MARKER}` (`train_00001.jpg 5`) and "
           "`Image/aligned/train_00001_aligned.jpg` (or `Image/original/train_00001.jpg`, `--variant original`)",
           "1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral", "train, test (from the name prefix)",
           "aligned 100x100 RGB (original: 112, centre square)"),
    Format("affectnet", "AffectNet", "`training.csv` / `validation.csv` (`subDirectory_filePath, face_x, face_y, "
           "face_width, face_height, facial_landmarks, expression, valence, arousal`) and the images they name "
           "(`Manually_Annotated_Images/689/<id>.jpg`)",
           "0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt; 8-10 dropped; "
           "`--classes 7` drops contempt", "train (training.csv), test (validation.csv)",
           f"face box cropped, {affectnet.DEFAULT_SIZE}x{affectnet.DEFAULT_SIZE} RGB; valence, arousal in `extras`"),
    Format("ckplus", "CK+", "`cohn-kanade-images/S005/001/S005_001_00000001.png` with "
           "`Emotion/S005/001/S005_001_00000011_emotion.txt` (one float code); or class folders of crops "
           "(`CK+48/anger/S010_004_00000017.png`)",
           "0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise; last "
           "`--emotion-frames` (3) frames of a labelled sequence carry its emotion, first `--neutral-frames` (1) "
           "are neutral", "train only (use `--val-split` / `--folds`, by subject)",
           f"frames: centre square at {ckplus.DEFAULT_SIZE}, gray or RGB; crops native; grouped by subject"),
    Format("jaffe", "JAFFE", "one folder of `KA.AN1.39.tiff` (subject, expression code and take, number)",
           "AN angry, DI disgust, FE fear, HA happy, NE neutral, SA sad, SU surprise", "train only",
           "256x256 gray; grouped by subject (first two letters)"),
    Format("expw", "ExpW", f"`{expw.MARKER}` (`image face_id top left right bottom confidence label`) and the "
           "photos in `origin/` (e.g. `data/label/label.lst`, `data/image/origin/`)",
           "0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral (FER2013's order)", "train only",
           f"face box cropped, {expw.DEFAULT_SIZE}x{expw.DEFAULT_SIZE} RGB; confidence in `extras`"),
    Format("folders", "Any class-folder tree", "`<class>/<image>` or `<split>/<class>/<image>` (folder or .zip; "
           "images may sit deeper inside a class folder)",
           "class folder names in any common spelling (anger, Happiness, sadness...); numeric folders with "
           "`--codes` affectnet, fer2013, rafdb or ckplus", "train, val, test from the folder names; else train",
           "native size (most common; others resized), colour kept; CK+/JAFFE file names grouped by subject"),
    Format("csv", "Any CSV", "`path,label[,split][,subject]` rows, paths relative to the CSV's folder; header "
           "names recognised (file, image, emotion, usage, ...) or given with `--columns path=COL,label=COL`",
           "class names in any spelling, or numeric with `--codes`", "from the split column, else train",
           "native size (most common; others resized), colour kept"),
)


def markdown_table() -> str:
    """The README's supported-datasets table."""
    lines = ["| format | dataset | layout it expects | labels | splits | faces as cached |",
             "|---|---|---|---|---|---|"]
    for f in FORMATS:
        cells = [f"`{f.name}`", f.title, f.layout, f.labels, f.splits, f.faces]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
