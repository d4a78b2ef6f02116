"""Studies: experiments built on :mod:`dhs` and :mod:`neuron_bridge`, each in its own
package beside the notebook that drives it (:mod:`studies.spines`). The libraries never
import them."""
