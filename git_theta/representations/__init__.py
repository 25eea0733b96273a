"""How a tensor is stored: whole, or as an exact update of another version; chosen when written, rebuilt when read.

cheapest.py          the cheapest exact form of a changed tensor, and ``store_tensor``
requested_update.py  the update type a user asked for (``git theta add --update-type``)
read.py              a metadata entry -> the tensor's exact bytes, verified
stream.py            many tensors read block by block, on every core
"""
