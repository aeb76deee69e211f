"""Leaf data in: colour and indexed label images, COCO and LabelMe exports -> one mask per leaf
(masks, annotations), the training layout (prepare) and mrcnn's Dataset over it (dataset)."""
