"""The pretrained models shipped with leafseg (zoo), their weight files beside it."""
