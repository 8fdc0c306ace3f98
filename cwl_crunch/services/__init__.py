"""Use cases of the container service. Each public function owns one transaction."""
