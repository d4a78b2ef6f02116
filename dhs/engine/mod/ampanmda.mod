COMMENT
AmpaNmda: a glutamatergic synapse with an AMPA and an NMDA conductance.

Each conductance is a normalised double exponential, written as exp2syn.mod writes it
(states A and B, g = B - A, an event adds weight*factor to both, and factor makes a
single event of weight w peak at w):

  AMPA  tau1_ampa = 0.2 ms (rise), tau2_ampa = 1.7 ms (decay)
  NMDA  tau1_nmda = 2 ms (rise),   tau2_nmda = 65 ms (decay)

The NetCon weight (uS) is the AMPA peak conductance; the NMDA peak conductance (before
the Mg block) is weight * nmda_ratio. The default nmda_ratio = 1 (equal peak
conductances) is a common modelling choice; measured NMDA/AMPA peak-conductance ratios
at cortical excitatory synapses are of order one.

Both share the reversal potential e = 0 mV. The NMDA conductance is blocked by
extracellular Mg2+ as in Jahr & Stevens (1990), J Neurosci 10:3178-3182:

  B(v) = 1 / (1 + exp(-0.062 (/mV) * v) * mg / 3.57 (mM)),   mg = 1 mM

  i = g_ampa * (v - e) + g_nmda * B(v) * (v - e)

As in exp2syn.mod, INITIAL keeps each tau1 within (1e-9, 0.9999) times its tau2.
ENDCOMMENT

NEURON {
    POINT_PROCESS AmpaNmda
    RANGE tau1_ampa, tau2_ampa, tau1_nmda, tau2_nmda, e, nmda_ratio, mg
    RANGE i, i_ampa, i_nmda, g_ampa, g_nmda
    NONSPECIFIC_CURRENT i
    RANGE factor_ampa, factor_nmda
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}

PARAMETER {
    tau1_ampa = 0.2 (ms) <1e-9,1e9>
    tau2_ampa = 1.7 (ms) <1e-9,1e9>
    tau1_nmda = 2 (ms) <1e-9,1e9>
    tau2_nmda = 65 (ms) <1e-9,1e9>
    e = 0 (mV)
    nmda_ratio = 1 (1)
    mg = 1 (mM)
}

ASSIGNED {
    v (mV)
    i (nA)
    i_ampa (nA)
    i_nmda (nA)
    g_ampa (uS)
    g_nmda (uS)
    factor_ampa
    factor_nmda
}

STATE {
    A_ampa (uS)
    B_ampa (uS)
    A_nmda (uS)
    B_nmda (uS)
}

INITIAL {
    LOCAL tp
    if (tau1_ampa/tau2_ampa > 0.9999) {
        tau1_ampa = 0.9999*tau2_ampa
    }
    if (tau1_ampa/tau2_ampa < 1e-9) {
        tau1_ampa = tau2_ampa*1e-9
    }
    if (tau1_nmda/tau2_nmda > 0.9999) {
        tau1_nmda = 0.9999*tau2_nmda
    }
    if (tau1_nmda/tau2_nmda < 1e-9) {
        tau1_nmda = tau2_nmda*1e-9
    }
    A_ampa = 0
    B_ampa = 0
    A_nmda = 0
    B_nmda = 0
    tp = (tau1_ampa*tau2_ampa)/(tau2_ampa - tau1_ampa) * log(tau2_ampa/tau1_ampa)
    factor_ampa = -exp(-tp/tau1_ampa) + exp(-tp/tau2_ampa)
    factor_ampa = 1/factor_ampa
    tp = (tau1_nmda*tau2_nmda)/(tau2_nmda - tau1_nmda) * log(tau2_nmda/tau1_nmda)
    factor_nmda = -exp(-tp/tau1_nmda) + exp(-tp/tau2_nmda)
    factor_nmda = 1/factor_nmda
}

BREAKPOINT {
    SOLVE state METHOD cnexp
    g_ampa = B_ampa - A_ampa
    g_nmda = B_nmda - A_nmda
    i_ampa = g_ampa*(v - e)
    i_nmda = g_nmda*mgblock(v)*(v - e)
    i = i_ampa + i_nmda
}

DERIVATIVE state {
    A_ampa' = -A_ampa/tau1_ampa
    B_ampa' = -B_ampa/tau2_ampa
    A_nmda' = -A_nmda/tau1_nmda
    B_nmda' = -B_nmda/tau2_nmda
}

FUNCTION mgblock(v (mV)) {
    : Jahr & Stevens (1990): fraction of NMDA channels not blocked by Mg2+
    mgblock = 1 / (1 + exp(0.062 (/mV) * -v) * (mg / 3.57 (mM)))
}

NET_RECEIVE(weight (uS)) {
    A_ampa = A_ampa + weight*factor_ampa
    B_ampa = B_ampa + weight*factor_ampa
    A_nmda = A_nmda + weight*nmda_ratio*factor_nmda
    B_nmda = B_nmda + weight*nmda_ratio*factor_nmda
}
