"""A cheaper hash for the random one-time passwords a roster import generates.

Slow hashing protects passwords people choose. An initial password is ten characters
drawn at random from 55 (about 57 bits), so brute force is out of reach even at a
fraction of the default PBKDF2 work factor, and importing a whole year group no longer
spends a quarter of a second per student. The first login re-hashes it with the default
hasher, and the student must replace it anyway.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class InitialPasswordHasher(PBKDF2PasswordHasher):
    algorithm = "pbkdf2_sha256_initial"
    iterations = 20_000
