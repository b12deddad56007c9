"""Model outputs with HF names: attribute, key and index access (None fields skipped)."""

import collections


class ModelOutput(collections.OrderedDict):
    """An ordered dict of the non-None fields, also readable as attributes and by index.

    Example:
    >>> out = CausalLMOutputWithPast(logits=1, past_key_values=None)
    >>> out.logits, out["logits"], out[0], out.past_key_values
    (1, 1, 1, None)
    """

    FIELDS = ()

    def __init__(self, *args, **kwargs):
        super().__init__()
        values = dict(*args, **kwargs)
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        for name in self.FIELDS:
            if values.get(name) is not None:
                super().__setitem__(name, values[name])

    def __getattr__(self, name):
        if name in self.FIELDS:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return tuple(self.values())[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())


def _output(name, fields):
    return type(name, (ModelOutput,), {"FIELDS": tuple(fields.split())})


BaseModelOutputWithPast = _output(
    "BaseModelOutputWithPast", "last_hidden_state past_key_values hidden_states attentions")
CausalLMOutputWithPast = _output(
    "CausalLMOutputWithPast", "loss logits past_key_values hidden_states attentions")
GPT2DoubleHeadsModelOutput = _output(
    "GPT2DoubleHeadsModelOutput",
    "loss mc_loss logits mc_logits past_key_values hidden_states attentions")
SequenceClassifierOutputWithPast = _output(
    "SequenceClassifierOutputWithPast", "loss logits past_key_values hidden_states attentions")
