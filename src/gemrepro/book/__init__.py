"""What belongs to the book: chapter helpers (:mod:`~gemrepro.book.chapter`: setup, figures,
provenance), the claims and their verdicts (:mod:`~gemrepro.book.claims`) and the build
(:mod:`~gemrepro.book.build`, ``python -m gemrepro.book.build``). Built on :mod:`gemrepro.studies`."""
