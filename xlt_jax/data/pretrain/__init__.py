"""Pretraining input pipeline: id shards -> packed blocks -> (derived language) -> MLM / span corruption.

`shards` tokenizes a corpus once, `packing` cuts the line stream into blocks, `mlm` and `span_corruption`
build the model batches, and `pipeline` samples sources and languages into checkpointable iterators.
"""
