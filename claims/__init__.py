"""claims: published claims about CIFAR-10 training tricks, judged over paired seeds."""
